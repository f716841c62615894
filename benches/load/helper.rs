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
//!
//! Not a test and not a bench: it only runs when the script runs it.

use anyhow::{Context, Result, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;

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
                .block_on(upstream(addr, Bytes::from(answer)))
        }
        _ => bail!("usage: load-helper write DIR | load-helper upstream ADDR FILE"),
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

async fn upstream(addr: SocketAddr, answer: Bytes) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let answer = answer.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let answer = answer.clone();
                async move {
                    // Read the whole request, as a real server would.
                    let _ = req.into_body().collect().await;
                    let response = Response::builder()
                        .header("content-type", "application/json")
                        .body(Full::new(answer))
                        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())));
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
