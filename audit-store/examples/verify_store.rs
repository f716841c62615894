//! Verifies a store and prints the report and how long the walk took: the
//! figure for "how long does `audit verify` take on N records".
//!
//! `cargo run --release -p portcullis-audit-store --example verify_store -- DB [PUB]`
#![allow(clippy::expect_used)]

use audit_store::{Config, Store};
use std::path::PathBuf;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let db = PathBuf::from(args.next().expect("usage: verify_store DB [PUB]"));
    let trusted = args
        .next()
        .map(|p| audit_store::load_verifying_key(&PathBuf::from(p)).expect("public key"));
    let store = Store::open_existing(&db, Config::default()).expect("open store");
    let t0 = Instant::now();
    let report = store.verify(trusted.as_ref()).expect("verify");
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "{} records, {} checkpoints in {secs:.1}s ({:.0} records/s): {}",
        report.records,
        report.checkpoints,
        report.records as f64 / secs,
        match &report.finding {
            None => "OK".to_owned(),
            Some(f) => f.to_string(),
        }
    );
}
