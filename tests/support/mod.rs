//! Shared harness for the end-to-end tests: real processes on loopback.
//!
//! The MCP peers are the official Python SDK (`tests/e2e/*.py`), run from
//! the virtual environment `cargo xtask test` creates, the official
//! TypeScript SDK (`tests/e2e/*.mjs`: a scripted client and the reference
//! server-everything), run from the `node_modules` it installs, and a
//! deliberately malicious upstream (`tests/e2e/evil_upstream.py`, a JSON
//! scenario of raw answers); the proxy is the `portcullis` binary under
//! test. [`raw_http`] and [`parse_response`] send and read exact bytes.
//! Every process is killed when its guard drops, so a failing test leaves
//! nothing running.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Python with the pinned MCP SDK. The tests fail, rather than skip,
/// without it: an end-to-end test that silently does not run proves nothing.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("PORTCULLIS_E2E_PYTHON") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let p = target.join("e2e-venv/bin/python");
    assert!(
        p.exists(),
        "no Python with the MCP SDK at {}: run `cargo xtask test` (it creates it), or set PORTCULLIS_E2E_PYTHON",
        p.display()
    );
    p
}

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("portcullis-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A child process, killed on drop.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_line(child: &mut Child, prefix: &'static str, name: &str) -> String {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix(prefix) {
                let _ = tx.send(rest.trim().to_owned());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{name} did not print {prefix:?} within 60 s"))
}

/// Starts the SDK server; returns it and its port.
pub fn mcp_server(extra: &[&str], record: &Path) -> (Proc, u16) {
    let mut child = Command::new(python())
        .arg(root().join("tests/e2e/mcp_server.py"))
        .args([
            "--port",
            "0",
            "--allow-any-host",
            "--fixed-time",
            "2026-01-01T00:00:00+00:00",
            "--root",
        ])
        .arg(root().join("tests/e2e"))
        .arg("--record")
        .arg(record)
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start mcp_server.py");
    let port = wait_line(&mut child, "READY ", "mcp_server.py")
        .parse()
        .unwrap();
    (
        Proc {
            child,
            name: "mcp_server".into(),
        },
        port,
    )
}

/// What a child printed on standard error, line by line, as it arrives.
pub type Logs = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// Reads the child's standard error into [`Logs`], echoing each line through
/// the test harness's capture (shown only when the test fails) rather than
/// onto the CI log.
fn drain_stderr(child: &mut Child) -> Logs {
    let logs = Logs::default();
    if let Some(stderr) = child.stderr.take() {
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[portcullis serve] {line}");
                sink.lock().unwrap().push(line);
            }
        });
    }
    logs
}

/// Starts `portcullis serve`; returns it and its base URL.
pub fn portcullis_serve(args: &[&str]) -> (Proc, String) {
    let (proc, url, _) = portcullis_serve_logged(args);
    (proc, url)
}

/// [`portcullis_serve`], with what it prints on standard error.
pub fn portcullis_serve_logged(args: &[&str]) -> (Proc, String, Logs) {
    let args = request_headers_args(args);
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("serve")
        .args(["--listen", "127.0.0.1:0"])
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start portcullis serve");
    let logs = drain_stderr(&mut child);
    let url = wait_line(&mut child, "portcullis: listening on ", "portcullis serve");
    (
        Proc {
            child,
            name: "portcullis".into(),
        },
        url,
        logs,
    )
}

/// `portcullis serve --bundle BUNDLE` in front of `http://127.0.0.1:PORT`,
/// with its audit log in a fresh temporary file. Returns the proxy, its
/// base URL (the MCP endpoint is `{url}/mcp`) and the audit log's path
/// (read it with [`jsonl`], inside [`eventually`]: records are written
/// when each stream ends).
pub fn serve_bundle(bundle: &Path, upstream_port: u16) -> (Proc, String, PathBuf) {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let audit = temp_dir(&format!("serve-{n}")).join("audit.jsonl");
    let (proc, url) = portcullis_serve(&[
        "--bundle",
        bundle.to_str().unwrap(),
        "--upstream",
        &format!("http://127.0.0.1:{upstream_port}"),
        "--audit-log",
        audit.to_str().unwrap(),
    ]);
    (proc, url, audit)
}

/// A loopback port that was free a moment ago (bind to 0, read, drop), for
/// a process whose configuration must name its own port before it starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `portcullis serve` listening on `listen`; `None` when it exits
/// without listening (the port was taken meanwhile), so the caller can pick
/// another port.
pub fn try_portcullis_serve_at(listen: &str, args: &[&str]) -> Option<(Proc, String)> {
    let args = request_headers_args(args);
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("serve")
        .args(["--listen", listen])
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start portcullis serve");
    drain_stderr(&mut child);
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("portcullis: listening on ") {
                let _ = tx.send(rest.trim().to_owned());
            }
        }
    });
    let proc = Proc {
        child,
        name: "portcullis".into(),
    };
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(url) => Some((proc, url)),
        // Disconnected: it exited; the guard reaps it.
        Err(mpsc::RecvTimeoutError::Disconnected) => None,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("portcullis serve did not start listening on {listen} within 60 s")
        }
    }
}

/// Runs the SDK client over `script`; returns its output lines, parsed.
pub fn mcp_client(url: &str, revision: &str, script: &Value, extra: &[&str]) -> Vec<Value> {
    let mut child = Command::new(python())
        .arg(root().join("tests/e2e/mcp_client.py"))
        .args([
            "--url",
            url,
            "--protocol-version",
            revision,
            "--script",
            "-",
        ])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mcp_client.py");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "mcp_client.py failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad client line {l}: {e}")))
        .collect()
}

/// The `node_modules` directory with the pinned TypeScript SDK and
/// server-everything (`tests/e2e/package-lock.json`), which `cargo xtask
/// test` installs. Missing, the tests fail rather than skip, as for
/// [`python`].
pub fn node_modules() -> PathBuf {
    let p = match std::env::var_os("PORTCULLIS_E2E_NODE_MODULES") {
        Some(p) => PathBuf::from(p),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root().join("target"))
            .join("e2e-node/node_modules"),
    };
    assert!(
        p.join("@modelcontextprotocol/sdk/package.json").exists(),
        "no MCP TypeScript SDK under {}: run `cargo xtask node` (or `cargo xtask test`), or set PORTCULLIS_E2E_NODE_MODULES",
        p.display()
    );
    p
}

/// `node`, or `PORTCULLIS_E2E_NODE`.
pub fn node() -> Command {
    let mut cmd = Command::new(std::env::var_os("PORTCULLIS_E2E_NODE").unwrap_or("node".into()));
    cmd.env("PORTCULLIS_E2E_NODE_MODULES", node_modules());
    cmd
}

/// Runs a client script (`tests/e2e/<script>`) with `steps` on stdin and
/// returns its output lines, parsed. Exit 0 (script ran) and 2 (connect
/// failed: the last line says why) both return; anything else panics.
fn run_client(mut cmd: Command, what: &str, steps: &[Value]) -> Vec<Value> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {what}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(Value::Array(steps.to_vec()).to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 2)),
        "{what} failed ({}): {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad {what} line {l}: {e}")))
        .collect()
}

/// The TypeScript SDK client (`tests/e2e/ts_client.mjs`) over `steps`, at
/// the SDK's default revision (2025-11-25). One line per step, plus
/// `connect` first and `notification` / `server_request` / `client_error`
/// lines as things arrive (tests/e2e/README.md).
pub fn ts_client(url: &str, steps: &[Value]) -> Vec<Value> {
    ts_client_with(url, steps, &[])
}

/// [`ts_client`] with more arguments: `--protocol-version V`, `--header
/// NAME=VALUE`, `--timeout S`.
pub fn ts_client_with(url: &str, steps: &[Value], extra: &[&str]) -> Vec<Value> {
    let mut cmd = node();
    cmd.arg(root().join("tests/e2e/ts_client.mjs"))
        .args(["--url", url, "--script", "-"])
        .args(extra);
    run_client(cmd, "ts_client.mjs", steps)
}

/// The Python SDK client (`tests/e2e/mcp_client.py`) over `steps` at
/// 2025-11-25; [`py_client_with`] for another revision (`--protocol-version
/// V`) or headers. Unlike [`mcp_client`], a failed connect returns its line
/// instead of panicking.
pub fn py_client(url: &str, steps: &[Value]) -> Vec<Value> {
    py_client_with(url, steps, &[])
}

pub fn py_client_with(url: &str, steps: &[Value], extra: &[&str]) -> Vec<Value> {
    let mut cmd = Command::new(python());
    cmd.arg(root().join("tests/e2e/mcp_client.py"))
        .args(["--url", url, "--script", "-"]);
    if !extra.contains(&"--protocol-version") {
        cmd.args(["--protocol-version", "2025-11-25"]);
    }
    cmd.args(extra);
    run_client(cmd, "mcp_client.py", steps)
}

/// The reference server-everything (TypeScript SDK) in streamable HTTP
/// mode, bound to 127.0.0.1 (`tests/e2e/everything_server.mjs`); its
/// endpoint is `http://127.0.0.1:PORT/mcp`.
pub fn server_everything() -> (Proc, u16) {
    let mut child = node()
        .arg(root().join("tests/e2e/everything_server.mjs"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("start everything_server.mjs");
    let port = wait_line(&mut child, "READY ", "everything_server.mjs")
        .parse()
        .unwrap();
    (
        Proc {
            child,
            name: "server-everything".into(),
        },
        port,
    )
}

/// Starts `tests/e2e/evil_upstream.py` with `scenario` (its rule list, or
/// `{"rules": [...], "default": bool}`; `json!([])` is the benign built-in
/// MCP server). Returns it, its port, and the file it records every request
/// it receives to (read with [`evil_records`]).
pub fn evil_upstream(scenario: &Value) -> (Proc, u16, PathBuf) {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = temp_dir(&format!("evil-{n}"));
    let scenario_file = dir.join("scenario.json");
    std::fs::write(&scenario_file, serde_json::to_vec_pretty(scenario).unwrap()).unwrap();
    let record = dir.join("record.jsonl");
    let mut child = Command::new(python())
        .arg(root().join("tests/e2e/evil_upstream.py"))
        .arg("--scenario")
        .arg(&scenario_file)
        .arg("--record")
        .arg(&record)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start evil_upstream.py");
    let port = wait_line(&mut child, "READY ", "evil_upstream.py")
        .parse()
        .unwrap();
    (
        Proc {
            child,
            name: "evil_upstream".into(),
        },
        port,
        record,
    )
}

/// The requests the evil upstream received, one JSON object each
/// (tests/e2e/README.md: seq, method, target, headers as [name, value]
/// pairs, body, body_b64, json, rpc, rule, complete, ...). Written as each
/// request arrives, before it is answered.
pub fn evil_records(record: &Path) -> Vec<Value> {
    jsonl(record)
}

/// (JSON-RPC method, params.name or params.uri or "") of every message in
/// every request body the evil upstream received, in order.
pub fn evil_rpc(records: &[Value]) -> Vec<(String, String)> {
    records
        .iter()
        .flat_map(|r| r["rpc"].as_array().cloned().unwrap_or_default())
        .map(|m| {
            (
                m["method"].as_str().unwrap_or("").to_owned(),
                m["name"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// A record's request header values (name case-insensitive), in order.
pub fn record_header<'a>(record: &'a Value, name: &str) -> Vec<&'a str> {
    record["headers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| h[0].as_str().is_some_and(|k| k.eq_ignore_ascii_case(name)))
        .filter_map(|h| h[1].as_str())
        .collect()
}

/// Reads a JSON-lines file (missing file: no lines).
pub fn jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Polls `f` until it returns true or 10 s pass (for files written when a
/// stream ends, after the client already has its answer).
pub fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..200 {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// An HTTP/1.1 response parsed by [`parse_response`] (and returned by
/// [`http`]).
#[derive(Debug, Clone, Default)]
pub struct Response {
    pub status: u16,
    /// The reason phrase, as sent.
    pub reason: String,
    /// Header names lower-cased, values trimmed; in order, duplicates kept.
    pub headers: Vec<(String, String)>,
    /// The status line and header lines exactly as received (without the
    /// blank line), for tests that care about spelling or odd bytes.
    pub head: Vec<u8>,
    /// The body, de-chunked when `transfer-encoding: chunked`.
    pub body: Vec<u8>,
    pub chunked: bool,
    /// Trailer fields of a chunked body (names lower-cased).
    pub trailers: Vec<(String, String)>,
    /// False when the bytes ended before the framing said the body does
    /// (short `content-length`, no last chunk). A body delimited by the
    /// connection closing is always complete.
    pub complete: bool,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header, in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The JSON-RPC messages in the body: each SSE event's data for
    /// `text/event-stream` (see [`sse_events`]), else the JSON body (a batch
    /// gives its elements). Data that is not JSON is skipped.
    pub fn messages(&self) -> Vec<Value> {
        let sse = self
            .header("content-type")
            .is_some_and(|c| c.to_ascii_lowercase().starts_with("text/event-stream"));
        let values: Vec<Value> = if sse {
            sse_events(&self.body)
                .iter()
                .filter_map(|e| serde_json::from_str(&e.data).ok())
                .collect()
        } else {
            serde_json::from_slice(&self.body).into_iter().collect()
        };
        values
            .into_iter()
            .flat_map(|v| match v {
                Value::Array(a) => a,
                v => vec![v],
            })
            .collect()
    }
}

/// One server-sent event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub id: Option<String>,
    /// The data lines joined with "\n".
    pub data: String,
}

/// Splits an SSE body into events (blank-line separated; `data:` lines
/// joined; comments and events without data skipped), as a client would.
pub fn sse_events(body: &[u8]) -> Vec<SseEvent> {
    let text = String::from_utf8_lossy(body)
        .replace("\r\n", "\n")
        .replace('\r', "\n");
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let mut ev = SseEvent::default();
        let mut data = Vec::new();
        for line in block.lines() {
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "data" => data.push(value),
                "event" => ev.event = Some(value.to_owned()),
                "id" => ev.id = Some(value.to_owned()),
                _ => {}
            }
        }
        if !data.is_empty() {
            ev.data = data.join("\n");
            out.push(ev);
        }
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn header_list(lines: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(lines)
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect()
}

/// Parses the first HTTP/1.1 response in `raw`; returns it and the bytes
/// after it (a pipelined or smuggled second response, for one). `None` when
/// `raw` has no complete status line and header block. Responses to HEAD
/// are not told apart (the caller knows it sent one).
pub fn parse_response(raw: &[u8]) -> Option<(Response, Vec<u8>)> {
    let split = find(raw, b"\r\n\r\n")?;
    let head = raw[..split].to_vec();
    let rest = &raw[split + 4..];
    let first_end = find(&head, b"\r\n").unwrap_or(head.len());
    let status_line = String::from_utf8_lossy(&head[..first_end]).into_owned();
    let mut parts = status_line.splitn(3, ' ');
    let _version = parts.next()?;
    let status: u16 = parts.next()?.trim().parse().ok()?;
    let reason = parts.next().unwrap_or("").to_owned();
    let headers = header_list(head.get(first_end + 2..).unwrap_or_default());
    let mut resp = Response {
        status,
        reason,
        headers,
        head,
        complete: true,
        ..Response::default()
    };
    let chunked = resp
        .header_all("transfer-encoding")
        .iter()
        .any(|v| v.to_ascii_lowercase().contains("chunked"));
    if (100..200).contains(&status) || status == 204 || status == 304 {
        return Some((resp, rest.to_vec()));
    }
    if chunked {
        resp.chunked = true;
        let mut pos = 0;
        loop {
            let Some(eol) = find(&rest[pos..], b"\r\n") else {
                resp.complete = false;
                return Some((resp, Vec::new()));
            };
            let size_text = String::from_utf8_lossy(&rest[pos..pos + eol]).into_owned();
            let size_text = size_text.split(';').next().unwrap_or("").trim();
            let Ok(size) = usize::from_str_radix(size_text, 16) else {
                resp.complete = false;
                return Some((resp, rest[pos..].to_vec()));
            };
            pos += eol + 2;
            if size == 0 {
                // Trailers, then the blank line.
                match find(&rest[pos..], b"\r\n\r\n") {
                    Some(end) if end > 0 => {
                        resp.trailers = header_list(&rest[pos..pos + end]);
                        pos += end + 4;
                    }
                    _ if rest[pos..].starts_with(b"\r\n") => pos += 2,
                    _ => {
                        resp.complete = false;
                        pos = rest.len();
                    }
                }
                return Some((resp, rest[pos..].to_vec()));
            }
            if rest.len() < pos + size {
                resp.body.extend_from_slice(&rest[pos..]);
                resp.complete = false;
                return Some((resp, Vec::new()));
            }
            resp.body.extend_from_slice(&rest[pos..pos + size]);
            pos += size;
            if rest[pos..].starts_with(b"\r\n") {
                pos += 2;
            } else {
                resp.complete = false;
                return Some((resp, rest[pos..].to_vec()));
            }
        }
    }
    if let Some(len) = resp.header("content-length") {
        let len: usize = len.parse().unwrap_or(0);
        let take = len.min(rest.len());
        resp.body = rest[..take].to_vec();
        resp.complete = take == len;
        return Some((resp, rest[take..].to_vec()));
    }
    // Delimited by the connection closing.
    resp.body = rest.to_vec();
    Some((resp, Vec::new()))
}

/// Every response in `raw`, in order (interim 1xx ones included).
pub fn parse_responses(raw: &[u8]) -> Vec<Response> {
    let mut out = Vec::new();
    let mut rest = raw.to_vec();
    while let Some((resp, more)) = parse_response(&rest) {
        out.push(resp);
        if more.is_empty() || more.len() == rest.len() {
            break;
        }
        rest = more;
    }
    out
}

/// `127.0.0.1:PORT` from `http://127.0.0.1:PORT[/...]` or itself.
fn authority(addr: &str) -> &str {
    let a = addr.trim_start_matches("http://");
    a.split('/').next().unwrap_or(a)
}

/// Writes `request` verbatim to a fresh TCP connection to `addr`
/// (`127.0.0.1:PORT`, or a base URL such as `portcullis serve` prints) and
/// returns every byte read back: until the peer closes, or once what was
/// read parses as complete responses and nothing more came for 500 ms (a
/// keep-alive connection), or after 30 s. For a second pipelined response
/// that is slow to come, send `connection: close` or use
/// [`raw_http_timeout`].
pub fn raw_http(addr: &str, request: &[u8]) -> Vec<u8> {
    raw_read(addr, request, Duration::from_secs(30), true)
}

/// [`raw_http`] that reads until the peer closes or `timeout` passes.
pub fn raw_http_timeout(addr: &str, request: &[u8], timeout: Duration) -> Vec<u8> {
    raw_read(addr, request, timeout, false)
}

fn raw_read(addr: &str, request: &[u8], timeout: Duration, settle: bool) -> Vec<u8> {
    use std::io::Read;
    use std::time::Instant;
    let mut stream = std::net::TcpStream::connect(authority(addr))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.write_all(request).unwrap();
    let deadline = Instant::now() + timeout;
    let quiet = Duration::from_millis(500);
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let wait = if settle && responses_complete(&raw) {
            left.min(quiet)
        } else {
            left.min(Duration::from_millis(100))
        };
        stream.set_read_timeout(Some(wait)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if settle && wait == quiet && responses_complete(&raw) {
                    break;
                }
            }
            // A reset after the response still leaves what was read.
            Err(_) => break,
        }
    }
    raw
}

/// What was read ends with a complete, non-interim, length-delimited
/// response.
fn responses_complete(raw: &[u8]) -> bool {
    let all = parse_responses(raw);
    let Some(last) = all.last() else {
        return false;
    };
    let delimited =
        last.chunked || last.header("content-length").is_some() || matches!(last.status, 204 | 304);
    !(100..200).contains(&last.status) && last.complete && delimited
}

/// One HTTP/1.1 request over a fresh connection, written by hand so a test
/// can send exactly the bytes it means (invalid UTF-8, odd headers).
pub fn http(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let authority = authority(base);
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    )
    .into_bytes();
    for (k, v) in headers {
        req.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(body);
    let raw = raw_http_timeout(base, &req, Duration::from_secs(30));
    parse_responses(&raw)
        .into_iter()
        .find(|r| !(100..200).contains(&r.status))
        .unwrap_or_else(|| panic!("no response in {:?}", String::from_utf8_lossy(&raw)))
}

/// Runs the `portcullis` binary under test: exit code, stdout, stderr.
pub fn portcullis(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `nth` line of the client script's output for `op`.
pub fn step<'a>(lines: &'a [Value], op: &str, nth: usize) -> &'a Value {
    lines
        .iter()
        .filter(|l| l["op"] == op)
        .nth(nth)
        .unwrap_or_else(|| panic!("no {op} #{nth} in {lines:?}"))
}

/// The sorted tool names of a tools/list result line.
pub fn tool_names(v: &Value) -> Vec<String> {
    let mut names: Vec<String> = v["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools in {v}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

/// Whether this run holds request headers: `PORTCULLIS_E2E_REQUEST_HEADERS=hold`
/// (`cargo xtask test` runs the end-to-end suites a second time so) gives
/// every `portcullis serve` a bundle with `Settings.spec.requestHeaders:
/// hold` and Envoy's `allow_on_headers_stop_iteration`; otherwise the
/// bundle's own mode, by default `forward`, under Envoy's default.
pub fn holds_request_headers() -> bool {
    std::env::var("PORTCULLIS_E2E_REQUEST_HEADERS").as_deref() == Ok("hold")
}

/// `args` for `portcullis serve`, with the bundle held to
/// `requestHeaders: hold` (and the flag that mode needs) when this run
/// holds request headers.
fn request_headers_args(args: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    if !holds_request_headers() {
        return out;
    }
    if let Some(i) = out.iter().position(|a| a == "--bundle")
        && let Some(path) = out.get(i + 1)
        && !path.ends_with(HELD)
    {
        let held = hold_bundle(Path::new(path));
        out[i + 1] = held.display().to_string();
    }
    if !out.iter().any(|a| a == "--allow-on-headers-stop-iteration") {
        out.push("--allow-on-headers-stop-iteration".into());
    }
    out
}

/// The directory name [`hold_bundle`] writes.
const HELD: &str = "held-bundle";

/// The bundle at `path` (a directory or a compiled file) with
/// `Settings.spec.requestHeaders: hold`, written as a bundle directory (one
/// document per file; JSON is YAML).
pub fn hold_bundle(path: &Path) -> PathBuf {
    let bundle =
        bundle_tools::source::load_any(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut documents = bundle.documents;
    match documents.iter_mut().find(|d| d.kind == "Settings") {
        Some(d) => d.spec["requestHeaders"] = serde_json::json!("hold"),
        None => documents.push(portcullis_core::test_util::doc(
            "Settings",
            "request-headers",
            serde_json::json!({"requestHeaders": "hold"}),
        )),
    }
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let out = temp_dir(&format!("hold-bundle-{n}")).join(HELD);
    std::fs::create_dir_all(&out).unwrap();
    for (i, d) in documents.iter().enumerate() {
        let text = serde_json::json!({
            "apiVersion": d.api_version,
            "kind": d.kind,
            "metadata": d.metadata,
            "spec": d.spec,
        });
        std::fs::write(out.join(format!("{i:02}.yaml")), text.to_string()).unwrap();
    }
    out
}

/// What the upstream's copy of a forwarded request says of the decision:
/// `x-mcp-decision: want` when the request headers were held for it, none
/// under `requestHeaders: forward` (they left before the decision; a
/// client's spoofed one is stripped either way).
pub fn assert_decision_header(headers: &Value, want: &str) {
    if holds_request_headers() {
        assert_eq!(headers["x-mcp-decision"], want, "{headers}");
    } else {
        assert!(headers.get("x-mcp-decision").is_none(), "{headers}");
    }
}
