//! `portcullis serve` prints the module's log lines as Envoy does
//! (`wasm log <plugin> <root_id> <vm_id>: <message>`, Envoy's
//! `Context::log` with `PluginBase::makeLogPrefix`), filtered by
//! `--log-level` (Envoy's default: info). The Portcullis filter logs each
//! audit record at info, so a refused request shows up in the log. A VM
//! that traps is visible too, and `--failure-policy` decides what its
//! streams get.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use support::*;

/// A JSON-RPC call on a route no McpServer matches: refused by the filter,
/// with an audit record (no upstream is needed).
fn refused_call(url: &str) -> u16 {
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#;
    http(
        url,
        "POST",
        "/nowhere",
        &[("content-type", "application/json")],
        body,
    )
    .status
}

fn serve(level: Option<&str>) -> (Proc, String, Logs, std::path::PathBuf) {
    let bundle = root().join("examples/bundle");
    let upstream = format!("http://127.0.0.1:{}", free_port());
    let audit = temp_dir(&format!("serve-logs-{}", level.unwrap_or("default"))).join("audit.jsonl");
    let mut args = vec![
        "--bundle",
        bundle.to_str().unwrap(),
        "--upstream",
        &upstream,
        "--audit-log",
        audit.to_str().unwrap(),
    ];
    if let Some(level) = level {
        args.extend(["--log-level", level]);
    }
    let (proc, url, logs) = portcullis_serve_logged(&args);
    (proc, url, logs, audit)
}

fn audit_lines(logs: &Logs) -> Vec<String> {
    logs.lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("wasm log portcullis portcullis portcullis: {"))
        .cloned()
        .collect()
}

#[test]
fn the_modules_log_lines_are_printed_in_envoys_shape_at_info_by_default() {
    let (_proc, url, logs, _) = serve(None);
    let status = refused_call(&url);
    assert!((400..500).contains(&status), "refused, got {status}");
    assert!(
        eventually(|| !audit_lines(&logs).is_empty()),
        "no `wasm log` audit line in {:?}",
        logs.lock().unwrap()
    );
    let line = audit_lines(&logs).remove(0);
    assert!(line.contains(" INFO "), "logged at info: {line}");
    let json = &line[line.find(": {").unwrap() + 2..];
    let record: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(record["decision"], "deny", "{record}");
}

#[test]
fn log_level_warn_hides_info_lines() {
    let (_proc, url, logs, audit) = serve(Some("warn"));
    let status = refused_call(&url);
    assert!((400..500).contains(&status), "refused, got {status}");
    // The record reaches the audit log after the module logged it (the
    // access-log phase follows the filter's callbacks); then a moment for
    // the pipe, and nothing at info may have been printed.
    assert!(eventually(|| !jsonl(&audit).is_empty()), "no audit record");
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(audit_lines(&logs).is_empty(), "{:?}", logs.lock().unwrap());
}

/// The smallest proxy-wasm module whose request headers callback traps.
const TRAP: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) unreachable))"#;

/// An upstream that answers every request 200 with `ok`.
fn upstream() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{BufRead, BufReader, Write};
        for stream in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    // Headers only (the test's requests have no body).
                    while line != "\r\n" {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                    }
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
                }
            });
        }
    });
    port
}

fn serve_trap(policy: Option<&str>) -> (Proc, String, Logs) {
    let dir = temp_dir(&format!("serve-trap-{}", policy.unwrap_or("default")));
    let module = dir.join("trap.wasm");
    std::fs::write(&module, wat::parse_str(TRAP).unwrap()).unwrap();
    let config = dir.join("config");
    std::fs::write(&config, b"").unwrap();
    let upstream = format!("http://127.0.0.1:{}", upstream());
    let mut args = vec![
        "--filter",
        module.to_str().unwrap(),
        "--filter-config",
        config.to_str().unwrap(),
        "--upstream",
        &upstream,
        "--workers",
        "1",
    ];
    if let Some(policy) = policy {
        args.extend(["--failure-policy", policy]);
    }
    portcullis_serve_logged(&args)
}

/// Envoy `FailurePolicy`: FAIL_CLOSED (the default) answers 503 to the
/// failing stream and every later one; FAIL_OPEN lets them pass. Either
/// way the trap is printed.
#[test]
fn a_trapping_vm_is_logged_and_the_failure_policy_decides() {
    for (policy, want) in [
        (None, [503, 503]),
        (Some("fail-closed"), [503, 503]),
        (Some("fail-reload"), [503, 503]),
        (Some("fail-open"), [200, 200]),
    ] {
        let (_proc, url, logs) = serve_trap(policy);
        let got = [
            http(&url, "GET", "/a", &[], b"").status,
            http(&url, "GET", "/b", &[], b"").status,
        ];
        assert_eq!(got, want, "{policy:?}");
        assert!(
            eventually(|| logs
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains("ERROR") && l.contains("unreachable"))),
            "{policy:?}: the trap is not in the log: {:?}",
            logs.lock().unwrap()
        );
    }
}
