//! `sse_differential`: The filter's SSE parser against a WHATWG event-stream
//! reader: split-point invariance, the same data/type/id for every event the
//! filter accepts, and re-serialised events (with_data, forward) read back
//! the same.
//!
//! The property itself is `fuzz/props/sse_differential.rs`, shared with the regression
//! replay in `tests/fuzz_regressions.rs`.
#![no_main]

#[path = "../props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::sse_differential::check(data));
