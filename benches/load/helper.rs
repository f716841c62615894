//! The load script's helper (`benches/load/run.sh`, issue 16 target 6):
//!
//! - `load-helper write DIR` writes what the runs need: `empty.wasm` (a
//!   proxy-wasm module whose every callback returns Continue without a
//!   hostcall: host-shim's floor), `typical.json` (the typical bundle of
//!   `benches/support/typical.rs`, as plugin configuration),
//!   `authorization.txt` (a cached-to-be RS256 bearer token for it, valid
//!   for an hour), `call-typical.json` and `call-echo.json` (a tools/call
//!   with 1 KiB of arguments, for the typical bundle and for the example
//!   bundle's `echo`), and `answer.json` (the 4 KiB JSON answer).
//! - `load-helper upstream ADDR FILE` serves FILE's bytes as a
//!   `200 application/json` answer to every request, on one thread, over
//!   HTTP/1.1 with keep-alive: the fixed-answer upstream.
//! - `load-helper soak SERVE ADMIN DIR REQUESTS SEGMENTS CONNECTIONS WARMUP
//!   RSS_KIB` sends the typical tools/call (`DIR` as `write` left it) to
//!   `portcullis serve` at `SERVE`, reading its admin listener at `ADMIN`,
//!   and prints a table per segment and the verdict of `driver.rs`; exits 1
//!   unless every answer was right and memory stayed flat
//!   (`benches/load/soak.sh`, issue 16 item 7).
//!
//! Not a test and not a bench: it only runs when the script runs it.

use anyhow::{Context, Result, bail};
use hyper::body::Bytes;
use std::net::SocketAddr;
use std::path::Path;

mod driver;

#[path = "../support/typical.rs"]
mod fixture;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["write", dir] => write(Path::new(dir)),
        ["upstream", addr, file] => {
            let addr: SocketAddr = addr.parse().context("upstream address")?;
            let answer = std::fs::read(file).with_context(|| format!("reading {file}"))?;
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(async {
                    let listener = tokio::net::TcpListener::bind(addr).await?;
                    println!("listening on {}", listener.local_addr()?);
                    driver::upstream(listener, Bytes::from(answer)).await
                })
        }
        [
            "soak",
            target,
            admin,
            dir,
            requests,
            segments,
            connections,
            warmup,
            rss_kib,
        ] => {
            let dir = Path::new(dir);
            let read = |name: &str| {
                std::fs::read(dir.join(name)).with_context(|| format!("reading {name}"))
            };
            let load = driver::Load {
                target: target.parse().context("serve address")?,
                admin: admin.parse().context("admin address")?,
                path: "/mcp".into(),
                body: Bytes::from(read("call-typical.json")?),
                authorization: String::from_utf8(read("authorization.txt")?)?,
                expected: Bytes::from(read("answer.json")?),
                connections: connections.parse().context("connections")?,
            };
            let warmup: usize = warmup.parse().context("warm-up segments")?;
            let rss: u64 = rss_kib.parse().context("RSS allowance")?;
            soak(
                &load,
                requests.parse().context("requests")?,
                segments.parse().context("segments")?,
                warmup,
                rss * 1024,
            )
        }
        _ => bail!(
            "usage: load-helper write DIR | load-helper upstream ADDR FILE | \
             load-helper soak SERVE ADMIN DIR REQUESTS SEGMENTS CONNECTIONS WARMUP RSS_KIB"
        ),
    }
}

fn write(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let put = |name: &str, bytes: &[u8]| {
        std::fs::write(dir.join(name), bytes).with_context(|| format!("writing {name}"))
    };
    put("empty.wasm", &wat::parse_str(fixture::EMPTY_MODULE)?)?;
    put("typical.json", &fixture::typical_bundle())?;
    put("authorization.txt", fixture::token().as_bytes())?;
    put("call-typical.json", &fixture::call_body())?;
    put("call-echo.json", &fixture::call_body_for("echo"))?;
    put("answer.json", &fixture::call_answer(false))?;
    Ok(())
}

fn soak(
    load: &driver::Load,
    requests: u64,
    segments: usize,
    warmup: usize,
    rss_allowance: u64,
) -> Result<()> {
    let (before, segs) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            println!("{}", driver::HEADER);
            driver::run(load, requests, segments, |i, seg| {
                println!("{}", driver::row(i, seg, warmup));
                if let Some(e) = &seg.first_error {
                    eprintln!("segment {}: {} errors, the first: {e}", i + 1, seg.errors);
                }
            })
            .await
        })?;
    let v = driver::verdict(&segs, warmup, rss_allowance)?;
    println!(
        "\nbefore the first segment: VM memory {:?} KiB, RSS {} KiB; segments marked w are the warm-up",
        before
            .vm_memory
            .iter()
            .map(|b| b / 1024)
            .collect::<Vec<_>>(),
        before.rss / 1024
    );
    println!("{}", v.describe());
    if !v.flat() {
        std::process::exit(1);
    }
    Ok(())
}
