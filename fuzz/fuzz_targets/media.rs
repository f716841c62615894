//! `media`: media::parse on arbitrary text: no panic; an accepted type's
//! essence is lower-case and parses again to itself.
//!
//! The property itself is `fuzz/props/media.rs`, shared with the regression
//! replay in `tests/fuzz_regressions.rs`.
#![no_main]

#[path = "../props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::media::check(data));
