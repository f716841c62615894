//! `sse`: The SSE parser on arbitrary bytes split at an arbitrary point: no
//! panic, and the same events (or the same refusal) whatever the split.
//!
//! The property itself is `fuzz/props/sse.rs`, shared with the regression
//! replay in `tests/fuzz_regressions.rs`.
#![no_main]

#[path = "../props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::sse::check(data));
