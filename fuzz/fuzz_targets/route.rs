//! `route`: Target::parse on arbitrary authority and path: no panic; an
//! accepted canonical path has no //, dot segment, ; ? # \\, upper-case ASCII
//! or control, and parsing it again gives the same host, port and path.
//!
//! The property itself is `fuzz/props/route.rs`, shared with the regression
//! replay in `tests/fuzz_regressions.rs`.
#![no_main]

#[path = "../props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::route::check(data));
