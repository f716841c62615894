//! The short soak (issue 16, item 7; the long one is
//! `benches/load/soak.sh`, with the same driver, `benches/load/driver.rs`):
//! 20,000 typical tools/calls (1 KiB of arguments, a cached RS256 token,
//! the typical bundle of `benches/support/typical.rs`, a 4 KiB answer)
//! through `portcullis serve` with two workers to a fixed-answer upstream,
//! over four keep-alive connections, in ten segments. Every answer must be
//! the upstream's, byte for byte. Memory, read from serve's admin listener
//! after each segment, is compared between the end of the two warm-up
//! segments and the end:
//!
//! - Each worker VM's wasm linear memory must not grow at all. It grows in
//!   whole 64 KiB pages and never shrinks, so once the warm-up has seen the
//!   largest heap this traffic needs (the same call, at most two streams in
//!   flight per VM), any growth is memory the filter keeps per request: 8
//!   bytes a request over the 8,000 requests each VM answers after the
//!   warm-up already take a page.
//! - serve's resident memory may grow by at most 2 MiB: the native side
//!   (hyper's buffers, the allocator's arenas) settles less exactly, and a
//!   leak of 128 bytes a request over the 16,000 measured requests would
//!   pass that.
//!
//! No timings are asserted; the segments' latencies are only printed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

#[path = "../benches/load/driver.rs"]
mod driver;
#[path = "../benches/support/typical.rs"]
mod fixture;

use hyper::body::Bytes;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use support::{Proc, temp_dir};

const REQUESTS: u64 = 20_000;
const SEGMENTS: usize = 10;
const WARMUP: usize = 2;
const CONNECTIONS: usize = 4;
const RSS_ALLOWANCE: u64 = 2 * 1024 * 1024;

/// The fixed-answer upstream on a thread of its own; returns its address.
fn upstream(answer: Vec<u8>) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                driver::upstream(listener, Bytes::from(answer)).await
            })
    });
    addr
}

/// `portcullis serve` with the typical bundle and an admin listener;
/// returns it, its address and its admin address.
fn serve(upstream: std::net::SocketAddr) -> (Proc, String, String) {
    let dir = temp_dir("soak");
    let config = dir.join("typical.json");
    std::fs::write(&config, fixture::typical_bundle()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("serve")
        .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .args(["--upstream", &format!("http://{upstream}")])
        .arg("--filter-config")
        .arg(&config)
        .args(["--workers", "2", "--log-level", "warn"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start portcullis serve");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut line = |prefix: &str| {
        let l = lines
            .next()
            .unwrap_or_else(|| panic!("serve exited before printing {prefix:?}"))
            .unwrap();
        l.strip_prefix(prefix)
            .unwrap_or_else(|| panic!("{l:?} is not {prefix:?}"))
            .to_owned()
    };
    let admin = line("portcullis: admin on http://");
    let listen = line("portcullis: listening on http://");
    let proc = Proc {
        child,
        name: "portcullis".into(),
    };
    (proc, listen, admin)
}

#[test]
fn memory_stays_flat_over_twenty_thousand_typical_calls() {
    let up = upstream(fixture::call_answer(false));
    let (_serve, listen, admin) = serve(up);
    let load = driver::Load {
        target: listen.parse().unwrap(),
        admin: admin.parse().unwrap(),
        path: "/mcp".into(),
        body: Bytes::from(fixture::call_body()),
        authorization: fixture::token(),
        expected: Bytes::from(fixture::call_answer(false)),
        connections: CONNECTIONS,
    };
    let (before, segments) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            println!("{}", driver::HEADER);
            driver::run(&load, REQUESTS, SEGMENTS, |i, seg| {
                println!("{}", driver::row(i, seg, WARMUP));
            })
            .await
        })
        .unwrap();
    let verdict = driver::verdict(&segments, WARMUP, RSS_ALLOWANCE).unwrap();
    println!("{}", verdict.describe());

    for (i, s) in segments.iter().enumerate() {
        assert_eq!(
            s.errors,
            0,
            "segment {}: {} answers were not the upstream's; the first: {:?}",
            i + 1,
            s.errors,
            s.first_error
        );
    }
    let last = &segments[SEGMENTS - 1].sample;
    assert_eq!(
        last.streams,
        before.streams + REQUESTS,
        "every call is one stream"
    );
    assert_eq!(last.vm_memory.len(), 2, "one VM a worker: {last:?}");
    for (w, bytes) in last.vm_memory.iter().enumerate() {
        assert!(
            *bytes > 0 && bytes % 65536 == 0,
            "worker {w}'s VM memory is whole wasm pages: {bytes}"
        );
    }
    let warm = &segments[WARMUP - 1].sample;
    assert_eq!(
        last.vm_memory,
        warm.vm_memory,
        "wasm linear memory grew after the warm-up: {}",
        verdict.describe()
    );
    assert!(
        last.rss <= warm.rss + RSS_ALLOWANCE,
        "serve's RSS grew by {} KiB after the warm-up: {}",
        (last.rss - warm.rss) / 1024,
        verdict.describe()
    );
    assert!(verdict.flat(), "{}", verdict.describe());
}
