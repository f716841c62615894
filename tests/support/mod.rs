//! Shared harness for the end-to-end tests: real processes on loopback.
//!
//! The MCP peers are the official Python SDK (`tests/e2e/*.py`), run from
//! the virtual environment `cargo xtask test` creates; the proxy is the
//! `portcullis` binary under test. Every process is killed when its guard
//! drops, so a failing test leaves nothing running.

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

/// Starts `portcullis serve`; returns it and its base URL.
pub fn portcullis_serve(args: &[&str]) -> (Proc, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("serve")
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start portcullis serve");
    let url = wait_line(&mut child, "portcullis: listening on ", "portcullis serve");
    (
        Proc {
            child,
            name: "portcullis".into(),
        },
        url,
    )
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
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("serve")
        .args(["--listen", listen])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start portcullis serve");
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

/// A response read by [`http`].
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
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
    use std::io::Read;
    let authority = base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(authority).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut rest = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    if chunked {
        let mut body = Vec::new();
        while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..eol]).trim(), 16)
                .unwrap_or(0);
            if size == 0 {
                break;
            }
            body.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
            rest = rest[eol + 2 + size + 2..].to_vec();
        }
        rest = body;
    }
    Response {
        status,
        headers,
        body: rest,
    }
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
