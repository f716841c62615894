//! `ids`: client_request_ids / ids_match on two arbitrary ids: no panic,
//! ids_match symmetric and reflexive, client ids sorted, unique and in range.
//!
//! The property itself is `fuzz/props/ids.rs`, shared with the regression
//! replay in `tests/fuzz_regressions.rs`.
#![no_main]

#[path = "../props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::ids::check(data));
