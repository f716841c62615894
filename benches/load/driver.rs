//! The soak driver (issue 16, item 7), shared by `load-helper soak` (run by
//! `benches/load/soak.sh`) and the short soak in CI (`tests/soak.rs`):
//!
//! - [`upstream`]: the fixed-answer upstream (one answer to every request,
//!   HTTP/1.1 keep-alive).
//! - [`run`]: sends N requests over C keep-alive connections (closed loop,
//!   as wrk does: each connection sends its next request when the last
//!   answer is in), in segments; checks every answer is the upstream's,
//!   byte for byte (a refusal would be a fast wrong answer); after each
//!   segment reads serve's admin `/stats/prometheus` for each worker VM's
//!   linear memory and the process's resident memory, once the workers
//!   have finished every stream sent so far.
//! - [`verdict`]: compares the last sample with the one at the end of the
//!   warm-up: wasm linear memory must not have grown at all, resident
//!   memory by at most an allowance; latency is compared and reported, not
//!   judged (timings depend on the machine's other load).

use anyhow::{Context, Result, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1 as client;
use hyper::server::conn::http1 as server;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Serves `answer` as a `200 application/json` answer to every request on
/// `listener`: the fixed-answer upstream.
pub async fn upstream(listener: tokio::net::TcpListener, answer: Bytes) -> Result<()> {
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
            let _ = server::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// What to send and what must come back.
#[derive(Clone)]
pub struct Load {
    /// `portcullis serve`'s listener.
    pub target: SocketAddr,
    /// Its admin listener (`--admin`).
    pub admin: SocketAddr,
    pub path: String,
    pub body: Bytes,
    /// The `Authorization` header's value.
    pub authorization: String,
    /// The upstream's answer, which a forwarded call returns unchanged.
    pub expected: Bytes,
    pub connections: usize,
}

/// What serve's admin listener said.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// `host_shim_wasm_vm_memory_bytes`, by worker.
    pub vm_memory: Vec<u64>,
    /// `host_shim_worker_streams_total`, all workers.
    pub streams: u64,
    /// `process_resident_memory_bytes`.
    pub rss: u64,
}

/// One segment's figures, and the sample taken after it.
#[derive(Debug, Clone, Default)]
pub struct Segment {
    pub requests: u64,
    /// Answers that were not the upstream's, and failed exchanges.
    pub errors: u64,
    /// The first error, to show.
    pub first_error: Option<String>,
    pub p50_us: u64,
    pub p99_us: u64,
    pub per_second: f64,
    pub sample: Sample,
}

/// Sends `requests` in `segments` equal segments; calls `progress` after
/// each. The returned samples start with the one taken before the first
/// segment (index 0), then one per segment.
pub async fn run(
    load: &Load,
    requests: u64,
    segments: usize,
    mut progress: impl FnMut(usize, &Segment),
) -> Result<(Sample, Vec<Segment>)> {
    let load = Arc::new(load.clone());
    let mut conns = Vec::new();
    for _ in 0..load.connections.max(1) {
        conns.push(connect(load.target).await?);
    }
    let before = scrape(load.admin).await?;
    let mut streams = before.streams;
    let mut out = Vec::new();
    let per = requests / segments.max(1) as u64;
    for i in 0..segments.max(1) {
        let next = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for conn in conns.drain(..) {
            let (load, next) = (load.clone(), next.clone());
            tasks.spawn(async move { drive(conn, &load, &next, per).await });
        }
        let mut latencies = Vec::with_capacity(usize::try_from(per).unwrap_or(0));
        let mut seg = Segment {
            requests: per,
            ..Segment::default()
        };
        while let Some(done) = tasks.join_next().await {
            let done = done.context("a connection task failed")?;
            conns.push(done.conn);
            latencies.extend(done.latencies);
            seg.errors += done.errors;
            if seg.first_error.is_none() {
                seg.first_error = done.first_error;
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        seg.per_second = per as f64 / elapsed.max(1e-9);
        latencies.sort_unstable();
        seg.p50_us = percentile(&latencies, 0.50);
        seg.p99_us = percentile(&latencies, 0.99);
        streams += per;
        seg.sample = settled(load.admin, streams).await?;
        progress(i, &seg);
        out.push(seg);
    }
    Ok((before, out))
}

/// The sample once the workers have finished `streams` streams: the last
/// answer's bytes can reach the client a moment before its stream ends.
async fn settled(admin: SocketAddr, streams: u64) -> Result<Sample> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = scrape(admin).await?;
        if s.streams >= streams {
            return Ok(s);
        }
        if Instant::now() > deadline {
            bail!("serve finished {} streams, {streams} were sent", s.streams);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((sorted.len() as f64) * q).ceil() as usize;
    sorted
        .get(rank.saturating_sub(1).min(sorted.len() - 1))
        .copied()
        .unwrap_or(0)
}

type Sender = client::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Result<Sender> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, conn) = client::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

struct Driven {
    conn: Sender,
    latencies: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

/// One connection's share of a segment: requests until `next` reaches
/// `total`, one at a time.
async fn drive(mut conn: Sender, load: &Load, next: &AtomicU64, total: u64) -> Driven {
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    while next.fetch_add(1, Ordering::Relaxed) < total {
        let started = Instant::now();
        let result = exchange(&mut conn, load).await;
        latencies.push(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
        if let Err(e) = result {
            errors += 1;
            first_error.get_or_insert_with(|| format!("{e:#}"));
            // A broken connection is replaced; a wrong answer leaves it be.
            if conn.is_closed()
                && let Ok(c) = connect(load.target).await
            {
                conn = c;
            }
        }
    }
    Driven {
        conn,
        latencies,
        errors,
        first_error,
    }
}

async fn exchange(conn: &mut Sender, load: &Load) -> Result<()> {
    conn.ready().await?;
    let req = Request::post(load.path.as_str())
        .header("host", load.target.to_string())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .header("authorization", load.authorization.as_str())
        .body(Full::new(load.body.clone()))?;
    let resp = conn.send_request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    if status != 200 || body != load.expected {
        bail!(
            "status {status}, not the upstream's answer: {}",
            String::from_utf8_lossy(body.get(..body.len().min(300)).unwrap_or_default())
        );
    }
    Ok(())
}

/// Reads serve's admin `/stats/prometheus`.
pub async fn scrape(admin: SocketAddr) -> Result<Sample> {
    let mut conn = connect(admin).await?;
    let req = Request::get("/stats/prometheus")
        .header("host", admin.to_string())
        .body(Full::new(Bytes::new()))?;
    let resp = conn.send_request(req).await?;
    let text = resp.into_body().collect().await?.to_bytes();
    parse_sample(&String::from_utf8_lossy(&text))
}

/// The three figures of [`Sample`] from Prometheus text.
pub fn parse_sample(text: &str) -> Result<Sample> {
    let mut s = Sample::default();
    let mut rss = None;
    for line in text.lines() {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let value = || value.parse::<u64>().with_context(|| format!("in {line:?}"));
        if let Some(labels) = name.strip_prefix("host_shim_wasm_vm_memory_bytes") {
            let worker: usize = labels
                .trim_start_matches("{worker=\"")
                .trim_end_matches("\"}")
                .parse()
                .with_context(|| format!("worker in {line:?}"))?;
            if s.vm_memory.len() <= worker {
                s.vm_memory.resize(worker + 1, 0);
            }
            if let Some(slot) = s.vm_memory.get_mut(worker) {
                *slot = value()?;
            }
        } else if name.starts_with("host_shim_worker_streams_total") {
            s.streams += value()?;
        } else if name == "process_resident_memory_bytes" {
            rss = Some(value()?);
        }
    }
    if s.vm_memory.is_empty() {
        bail!("no host_shim_wasm_vm_memory_bytes on the admin listener");
    }
    s.rss = rss.context("no process_resident_memory_bytes on the admin listener")?;
    Ok(s)
}

/// The soak's judgement.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub errors: u64,
    /// Final minus end-of-warm-up linear memory, by worker.
    pub vm_growth: Vec<i64>,
    pub rss_growth: i64,
    /// Requests after the warm-up.
    pub measured: u64,
    /// Median p50 of the last three segments over that of the first three
    /// after the warm-up.
    pub p50_ratio: f64,
    pub rss_allowance: u64,
}

impl Verdict {
    /// No errors, no linear memory growth, resident memory within the
    /// allowance.
    pub fn flat(&self) -> bool {
        self.errors == 0
            && self.vm_growth.iter().all(|g| *g <= 0)
            && self.rss_growth <= i64::try_from(self.rss_allowance).unwrap_or(i64::MAX)
    }

    pub fn describe(&self) -> String {
        let per_request = |g: i64| g as f64 / self.measured.max(1) as f64;
        format!(
            "errors: {}\n\
             wasm linear memory after the warm-up to the end: {} bytes by worker ({}) over {} requests\n\
             serve RSS after the warm-up to the end: {:+} KiB ({:+.2} bytes a request; allowed {} KiB)\n\
             p50, last three segments over the first three after the warm-up: {:.2}x (reported, not judged)\n\
             verdict: {}",
            self.errors,
            self.vm_growth
                .iter()
                .map(|g| format!("{g:+}"))
                .collect::<Vec<_>>()
                .join(", "),
            if self.vm_growth.iter().all(|g| *g <= 0) {
                "flat"
            } else {
                "GREW"
            },
            self.measured,
            self.rss_growth / 1024,
            per_request(self.rss_growth),
            self.rss_allowance / 1024,
            self.p50_ratio,
            if self.flat() { "FLAT" } else { "NOT FLAT" },
        )
    }
}

/// Judges `segments` after `warmup` of them (at least one segment must
/// follow the warm-up).
pub fn verdict(segments: &[Segment], warmup: usize, rss_allowance: u64) -> Result<Verdict> {
    let warmup = warmup.max(1);
    let (Some(base), Some(last)) = (segments.get(warmup - 1), segments.last()) else {
        bail!("no segment after a warm-up of {warmup}");
    };
    if segments.len() <= warmup {
        bail!("no segment after a warm-up of {warmup}");
    }
    let diff = |a: u64, b: u64| {
        i64::try_from(a).unwrap_or(i64::MAX) - i64::try_from(b).unwrap_or(i64::MAX)
    };
    let vm_growth = last
        .sample
        .vm_memory
        .iter()
        .zip(base.sample.vm_memory.iter().chain(std::iter::repeat(&0)))
        .map(|(l, b)| diff(*l, *b))
        .collect();
    let after = segments.get(warmup..).unwrap_or_default();
    let median_p50 = |s: &[Segment]| {
        let mut v: Vec<u64> = s.iter().map(|s| s.p50_us).collect();
        v.sort_unstable();
        v.get(v.len() / 2).copied().unwrap_or(0) as f64
    };
    let n = after.len().min(3);
    let first = median_p50(after.get(..n).unwrap_or_default());
    let lastn = median_p50(after.get(after.len() - n..).unwrap_or_default());
    Ok(Verdict {
        errors: segments.iter().map(|s| s.errors).sum(),
        vm_growth,
        rss_growth: diff(last.sample.rss, base.sample.rss),
        measured: after.iter().map(|s| s.requests).sum(),
        p50_ratio: if first > 0.0 { lastn / first } else { 0.0 },
        rss_allowance,
    })
}

/// A Markdown row for one segment (`i` from 0).
pub fn row(i: usize, seg: &Segment, warmup: usize) -> String {
    let kib = |b: u64| b / 1024;
    format!(
        "| {:>3}{} | {:>9} | {:>6} | {:>6} | {:>7.0} | {:>14} | {:>8} |",
        i + 1,
        if i < warmup { "w" } else { " " },
        seg.requests,
        seg.p50_us,
        seg.p99_us,
        seg.per_second,
        seg.sample
            .vm_memory
            .iter()
            .map(|b| kib(*b).to_string())
            .collect::<Vec<_>>()
            .join(" + "),
        kib(seg.sample.rss),
    )
}

pub const HEADER: &str = "| seg  |  requests | p50 µs | p99 µs |   req/s | VM memory KiB  | RSS KiB  |\n\
                          | ---- | --------- | ------ | ------ | ------- | -------------- | -------- |";
